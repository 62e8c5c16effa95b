"""The acpo explorer app (``python app/main.py``)."""
