"""Dropout Playground: learn and test what dropout does to a neural network, in a browser."""
