"""Foundations every other folder uses: errors, progress bars, runtime (threads, device, precision), presets,
networks, data, storage, symmetry specs, caches and metrics. Imports nothing else of lpsbook."""
