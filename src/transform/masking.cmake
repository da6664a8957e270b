# masking library: written by the masking work
