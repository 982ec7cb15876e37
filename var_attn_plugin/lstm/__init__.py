"""The LSTM architecture (``--arch varattn_lstm``): the paper's encoder, decoder and prior."""
