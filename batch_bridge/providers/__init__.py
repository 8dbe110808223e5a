"""Ready-made provider adapters (submit/poll pairs) for the bridge.

Each adapter lives in its own module so that importing `batch_bridge.providers` never
imports a provider SDK: `from batch_bridge.providers.openai import OpenAIBatch, wrap_openai`.
"""
