"""Members to a submission: point fusion in Å, candidate tables, threshold and submission.csv."""
