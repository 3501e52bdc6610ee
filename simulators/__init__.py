"""Simulators for every device, and the biology of the culture itself.

In a dry-run the culture model is the ground truth: simulated devices read it
(the counter counts it, the imager sees its confluence) and act on it (the liquid
handler moves cells with the liquid, the incubator lets them grow).
"""
