"""The core layer: the event-graph IR, units, the GPU hardware model and the Result.

Everything else builds on these modules; they import nothing from the rest of des.
"""
