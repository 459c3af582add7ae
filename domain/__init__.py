"""Pure business rules of usage-moments: no Faust, Kafka or asyncio in here."""
