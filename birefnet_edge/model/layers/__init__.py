"""Blocks shared by the BiRefNet assembly: deformable conv, decoder blocks, patch injection."""
