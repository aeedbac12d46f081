"""What tests and benchmarks share: real servers started on loopback, fakes built from
the documented protocols, and recordings as PCM. Plenary itself never imports this."""
