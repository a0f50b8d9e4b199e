"""Jobs: the job model and state machine, stores, the dispatcher, waiting and recovery."""
