"""The network and its maths: nn.Modules, configs, the action space and flow matching.

Nothing here reads files, builds prompts or runs a plan; `inputs`, `inference` and `io` build on
this package, never the other way round (test/test_layering.py keeps it so).
"""
