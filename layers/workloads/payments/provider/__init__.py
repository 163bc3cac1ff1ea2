"""The payment gateway: a port (port.py), the real Mercado Pago adapter (mercadopago.py), the
webhook signature (signature.py) and a sandbox that speaks the same API (sandbox.py)."""
