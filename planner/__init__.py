"""The planner: the spec, the plan (a pure function of the spec and the stored state), the CLI."""
