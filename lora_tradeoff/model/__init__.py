"""The model side shared by training and evaluation: where the base model comes from and its
manifest (`source`), loading it with or without fine-tuned weights (`loading`), tokenizers built
without the model hub (`tokenizers`) and the precision a job runs in (`precision`).
"""
