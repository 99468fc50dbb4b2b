"""Property-based fuzzing of every HTTP route (issue 9: no request gets a 5xx)."""
