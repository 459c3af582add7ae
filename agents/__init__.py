"""The stream handlers, one per module: usage and plan steps, the drop and anniversary
background work, the tick scheduler and the gauges' refresh. ``commands.worker`` wires them
onto the engine.
"""
