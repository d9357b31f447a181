"""Active learning: explore with a committee, select uncertain frames, label, retrain."""
