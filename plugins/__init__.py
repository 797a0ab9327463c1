"""molzoo's built-in plugins, one package per component kind (``text``, ``molecule``, ``align``,
``loss``, ``tasks``, ``compositions``). They import only :mod:`zoo.api` and :mod:`zoo.registry`,
like a third-party plugin."""
