"""Publishing results: the console report, `l0eval compare`, the leaderboard and its plots."""
