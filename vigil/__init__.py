"""Vigil: model monitoring for Kubernetes and for one machine.

The core package holds what every process shares without TensorFlow: the
`ModelMonitor` spec, the component plan, CloudEvent decoding, metrics helpers,
the model server, the request logger and the CLI.
"""

__version__ = "0.1.0"
