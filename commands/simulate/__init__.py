"""``moments simulate``: the traffic model (:mod:`.traffic`) and the demo accounts
(:mod:`.demo`) are pure; :mod:`.publish` paces them and sends them to Kafka."""
