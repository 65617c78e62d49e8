"""unionspec conformance suite: strategies, state machines, comparison and the pytest plugin."""
