"""Reference solution for ex08_rnn (hidden from students)."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence


class LSTMCellScratch(nn.Module):
    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.weight_ih = nn.Parameter(torch.empty(4 * hidden_size, input_size))
        self.weight_hh = nn.Parameter(torch.empty(4 * hidden_size, hidden_size))
        self.bias_ih = nn.Parameter(torch.empty(4 * hidden_size))
        self.bias_hh = nn.Parameter(torch.empty(4 * hidden_size))
        bound = 1.0 / math.sqrt(hidden_size)
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def forward(self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        if state is None:
            h = c = x.new_zeros(x.shape[0], self.hidden_size)
        else:
            h, c = state
        gates = x @ self.weight_ih.T + self.bias_ih + h @ self.weight_hh.T + self.bias_hh
        i, f, g, o = gates.chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return h, c

    def load_from(self, cell: nn.LSTMCell) -> None:
        with torch.no_grad():
            self.weight_ih.copy_(cell.weight_ih)
            self.weight_hh.copy_(cell.weight_hh)
            self.bias_ih.copy_(cell.bias_ih)
            self.bias_hh.copy_(cell.bias_hh)


class SineForecaster(nn.Module):
    def __init__(self, hidden_size: int = 32, num_layers: int = 1, cell: str = "lstm") -> None:
        super().__init__()
        rnn = {"lstm": nn.LSTM, "gru": nn.GRU}[cell]
        self.rnn = rnn(1, hidden_size, num_layers, batch_first=True)
        self.head = nn.Linear(hidden_size, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x)
        return self.head(out[:, -1])


def last_valid_step(outputs: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    rows = torch.arange(outputs.shape[0], device=outputs.device)
    return outputs[rows, lengths.to(outputs.device).long() - 1]


class BiLSTMClassifier(nn.Module):
    def __init__(self, vocab_size: int, embed_dim: int, hidden_dim: int, num_classes: int,
                 num_layers: int = 1, pad_idx: int = 0, dropout: float = 0.0) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=pad_idx)
        self.lstm = nn.LSTM(embed_dim, hidden_dim, num_layers, batch_first=True, bidirectional=True,
                            dropout=dropout if num_layers > 1 else 0.0)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(2 * hidden_dim, num_classes)

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        packed = pack_padded_sequence(self.embedding(tokens), lengths.cpu(), batch_first=True, enforce_sorted=False)
        _, (h_n, _) = self.lstm(packed)
        features = torch.cat([h_n[-2], h_n[-1]], dim=1)
        return self.fc(self.dropout(features))


class Seq2Seq(nn.Module):
    def __init__(self, vocab_size: int, embed_dim: int = 32, hidden_dim: int = 64, sos_idx: int = 1) -> None:
        super().__init__()
        self.sos_idx = sos_idx
        self.encoder_embedding = nn.Embedding(vocab_size, embed_dim)
        self.encoder = nn.LSTM(embed_dim, hidden_dim, batch_first=True)
        self.decoder_embedding = nn.Embedding(vocab_size, embed_dim)
        self.decoder = nn.LSTM(embed_dim, hidden_dim, batch_first=True)
        self.out = nn.Linear(hidden_dim, vocab_size)

    def _step(self, token: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]
              ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        out, state = self.decoder(self.decoder_embedding(token).unsqueeze(1), state)
        return self.out(out.squeeze(1)), state

    def forward(self, src: torch.Tensor, tgt: torch.Tensor, teacher_forcing_ratio: float = 0.5,
                generator: torch.Generator | None = None) -> torch.Tensor:
        _, state = self.encoder(self.encoder_embedding(src))
        token = tgt[:, 0]
        steps = []
        for t in range(1, tgt.shape[1]):
            logits, state = self._step(token, state)
            steps.append(logits)
            if t + 1 < tgt.shape[1]:
                teacher = bool(torch.rand((), generator=generator) < teacher_forcing_ratio)
                token = tgt[:, t] if teacher else logits.argmax(1)
        return torch.stack(steps, dim=1)

    @torch.no_grad()
    def greedy_decode(self, src: torch.Tensor, max_len: int) -> torch.Tensor:
        _, state = self.encoder(self.encoder_embedding(src))
        token = torch.full((src.shape[0],), self.sos_idx, dtype=torch.long, device=src.device)
        tokens = []
        for _ in range(max_len):
            logits, state = self._step(token, state)
            token = logits.argmax(1)
            tokens.append(token)
        return torch.stack(tokens, dim=1)
