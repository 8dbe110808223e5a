"""The tests' own tools, never installed with the library: the production-like engine
(`prodengine`, installed by `python -m tests.support.install`) and the reliability soak
(`python -m tests.support.soak`)."""
