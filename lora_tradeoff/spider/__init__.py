"""Spider Text-to-SQL, the gain side: acquiring the data (`data`), the few-shot and zero-shot
chat prompts and SFT examples (`prompts`), batched greedy SQL generation with its stop rule
(`generation`), pulling the SQL out of a completion (`extraction`), running predicted and gold
SQL read-only and time-limited on the real databases (`execution`), the official hardness
levels (`hardness`) and the per-question scores and summary of a model (`scoring`).
"""
