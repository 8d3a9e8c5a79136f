"""Running the model: the phase-1 reasoning loop, the `Planner`, its inputs and outputs, sample
selection and stage timing."""
