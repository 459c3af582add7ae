"""Webhook delivery of moment events (issue 21), the pure part: which endpoints an event goes
to (:mod:`.endpoints`), how a request is signed (:mod:`.signing`), what an answer means
(:mod:`.outcomes`), when a failed delivery is tried again (:mod:`.schedule`) and the records a
retry or a dead delivery leaves on Kafka (:mod:`.records`). ``moments deliver``
(``commands/deliver/``) does the Kafka and HTTP around them."""
