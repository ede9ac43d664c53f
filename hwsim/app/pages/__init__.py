"""The app's pages, one module each: ``layout(app_ctx)`` builds it, ``register(app, app_ctx)``
adds its callbacks. :data:`PAGES` lists them in the order of the navigation bar."""

from __future__ import annotations

from hwsim.app.pages import attention, device, model, moe, serving

#: (URL path, navigation label, module)
PAGES = (
    ("/device", "Device", device),
    ("/model", "Model step", model),
    ("/attention", "Attention", attention),
    ("/serving", "Serving", serving),
    ("/moe", "MoE all-to-all", moe),
)
