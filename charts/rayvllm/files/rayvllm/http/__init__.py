"""The HTTP layer in front of vLLM: ASGI plumbing, the ingress guard, API keys and metering.

Plain ASGI and the standard library: it imports no Ray and no vLLM, so it is tested without either.
"""
