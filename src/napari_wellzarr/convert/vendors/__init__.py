"""Instrument exports recognised from their own files (index XML, ``.HTD``, ``.mlf``)."""
