"""What every layer uses: errors with their fix, stage timing, progress bars, file hashes, atomic writes."""
