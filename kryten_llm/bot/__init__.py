"""The live bot's parts and how they are put together.

:mod:`~kryten_llm.bot.assembly` builds the bot from the settings in two halves: the listening
half (:mod:`~kryten_llm.bot.intake`: parse, state, decide, enqueue, in the NATS callback) and the
answering half (:mod:`~kryten_llm.bot.replypath`: the :mod:`~kryten_llm.bot.responder` workers).
:mod:`~kryten_llm.bot.responselog` writes every outcome; :mod:`~kryten_llm.bot.supervisor` keeps
the service's long-lived tasks alive. The service (:mod:`kryten_llm.service`) owns the resources
and the lifecycle around them.
"""
