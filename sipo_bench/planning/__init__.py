"""Planning a run: from a resolved config to the stage graph (`experiment`), and the stages
every task shares (`taskstages`: data, base model)."""
