"""The simulation layer: one runtime that runs an event graph, driven by a communication model
(contended over SimPy links and switches, or closed form), and the hop and cost models they share.
"""
