"""Reference data the city keeps in data/: places (gazetteer, resolution of a resident's
words to a place), the routing catalogue, the policy knowledge base and jieba's dictionaries."""
