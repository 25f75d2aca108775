"""trainers: data loading, short proxy training in JAX, and latency/throughput probes."""
