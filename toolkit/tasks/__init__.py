"""Tasks: how each pipeline (captioning, speech recognition) trains and evaluates with the shared pieces."""
