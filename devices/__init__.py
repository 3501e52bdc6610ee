"""Device front ends with exchangeable back ends, the PyLabRobot way.

The liquid handler and the incubator *are* PyLabRobot's ``LiquidHandler`` and
``Incubator`` front ends; what is here are the front ends PyLabRobot does not have
(the cell counter, the confluence imager) and their back-end interfaces. Every back
end has a simulator in ``simulators/``.
"""
