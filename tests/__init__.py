"""Vigil's tests. A package, so every helper is imported one way: ``from tests.servers import …``
(pytest puts the repository root on ``sys.path``; the benchmarks do the same)."""
