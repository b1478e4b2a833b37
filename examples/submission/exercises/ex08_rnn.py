"""My solutions for exercise 8 (recurrent networks)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence


class LSTMCellScratch(nn.Module):
    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        k = 1 / math.sqrt(hidden_size)
        self.weight_ih = nn.Parameter(torch.empty(4 * hidden_size, input_size).uniform_(-k, k))
        self.weight_hh = nn.Parameter(torch.empty(4 * hidden_size, hidden_size).uniform_(-k, k))
        self.bias_ih = nn.Parameter(torch.empty(4 * hidden_size).uniform_(-k, k))
        self.bias_hh = nn.Parameter(torch.empty(4 * hidden_size).uniform_(-k, k))

    def forward(self, x, state=None):
        if state is None:
            zero = torch.zeros(len(x), self.hidden_size, dtype=x.dtype, device=x.device)
            state = (zero, zero)
        h_prev, c_prev = state
        z = F.linear(x, self.weight_ih, self.bias_ih) + F.linear(h_prev, self.weight_hh, self.bias_hh)
        H = self.hidden_size
        in_gate = torch.sigmoid(z[:, :H])
        forget_gate = torch.sigmoid(z[:, H:2 * H])
        candidate = torch.tanh(z[:, 2 * H:3 * H])
        out_gate = torch.sigmoid(z[:, 3 * H:])
        c_next = forget_gate * c_prev + in_gate * candidate
        return out_gate * torch.tanh(c_next), c_next

    def load_from(self, cell):
        with torch.no_grad():
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(self, name).copy_(getattr(cell, name))


class SineForecaster(nn.Module):
    def __init__(self, hidden_size=32, num_layers=1, cell="lstm"):
        super().__init__()
        if cell == "gru":
            self.rnn = nn.GRU(1, hidden_size, num_layers, batch_first=True)
        else:
            self.rnn = nn.LSTM(1, hidden_size, num_layers, batch_first=True)
        self.head = nn.Linear(hidden_size, 1)

    def forward(self, x):
        seq_out = self.rnn(x)[0]
        return self.head(seq_out[:, seq_out.shape[1] - 1, :])


def last_valid_step(outputs, lengths):
    last = (lengths.to(outputs.device) - 1).long()
    return outputs[torch.arange(len(last), device=outputs.device), last]


class BiLSTMClassifier(nn.Module):
    def __init__(self, vocab_size, embed_dim, hidden_dim, num_classes, num_layers=1, pad_idx=0, dropout=0.0):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=pad_idx)
        self.lstm = nn.LSTM(embed_dim, hidden_dim, num_layers=num_layers, batch_first=True, bidirectional=True,
                            dropout=dropout if num_layers > 1 else 0.0)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(hidden_dim * 2, num_classes)

    def forward(self, tokens, lengths):
        packed = pack_padded_sequence(self.embedding(tokens), lengths.to("cpu"), batch_first=True,
                                      enforce_sorted=False)
        h_n = self.lstm(packed)[1][0]
        both = torch.cat((h_n[-2], h_n[-1]), 1)
        return self.fc(self.dropout(both))


class Seq2Seq(nn.Module):
    def __init__(self, vocab_size, embed_dim=32, hidden_dim=64, sos_idx=1):
        super().__init__()
        self.sos_idx = sos_idx
        self.encoder_embedding = nn.Embedding(vocab_size, embed_dim)
        self.encoder = nn.LSTM(embed_dim, hidden_dim, batch_first=True)
        self.decoder_embedding = nn.Embedding(vocab_size, embed_dim)
        self.decoder = nn.LSTM(embed_dim, hidden_dim, batch_first=True)
        self.out = nn.Linear(hidden_dim, vocab_size)

    def decode_one(self, tok, hc):
        y, hc = self.decoder(self.decoder_embedding(tok[:, None]), hc)
        return self.out(y[:, 0]), hc

    def forward(self, src, tgt, teacher_forcing_ratio=0.5, generator=None):
        hc = self.encoder(self.encoder_embedding(src))[1]
        inp = tgt[:, 0]
        results = []
        for t in range(1, tgt.size(1)):
            scores, hc = self.decode_one(inp, hc)
            results.append(scores)
            if t < tgt.size(1) - 1:
                use_teacher = torch.rand(1).item() < teacher_forcing_ratio
                inp = tgt[:, t] if use_teacher else scores.argmax(dim=1)
        return torch.stack(results, dim=1)

    @torch.no_grad()
    def greedy_decode(self, src, max_len):
        hc = self.encoder(self.encoder_embedding(src))[1]
        inp = torch.full((src.size(0),), self.sos_idx, dtype=torch.long, device=src.device)
        picked = []
        for _ in range(max_len):
            scores, hc = self.decode_one(inp, hc)
            inp = scores.argmax(dim=1)
            picked.append(inp)
        return torch.stack(picked, dim=1)
