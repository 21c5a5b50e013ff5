"""DeepEval metrics of this project; thin wrappers over `lora_tradeoff`."""

from custom_metrics.execution_accuracy import ExecutionAccuracy

__all__ = ["ExecutionAccuracy"]
