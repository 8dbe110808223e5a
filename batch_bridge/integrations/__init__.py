"""Integrations with agent frameworks.

Each integration lives in its own module so that importing `batch_bridge.integrations`
never imports a framework: `from batch_bridge.integrations.langchain import batched`.
"""
