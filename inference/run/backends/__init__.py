"""Where tomograms run: in this process, in local worker processes, or on Ray actors; one task ledger."""
