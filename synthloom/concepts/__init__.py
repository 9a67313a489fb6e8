"""SynthLLM concept graphs (arXiv 2503.19551): extract concepts from seed documents, link the
concepts that co-occur, and recombine them into prompts for new samples."""
