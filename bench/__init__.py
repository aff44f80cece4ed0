"""Benchmarks of netsetup against hand-written baselines.

Run `python -m bench [--quick]` as root from the repository root. Every
namespace, address, rule and process the benchmarks create lives in
network namespaces they create and remove again; see bench/__main__.py.
"""
