"""``AutoEncoderBaseline``: the papers' comparison model, an encoder mirroring the decoder."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

from ._base import BaseFlowEstimator, build_mlp
from .flow import LOSSES
from .flow._rows import invariant_rowwise, padded_mlp, probe_codes, probe_rows
from .nn import make_decoder, make_encoder

if TYPE_CHECKING:
    from ._typing import Device, RandomStateLike


class AutoEncoderBaseline(BaseFlowEstimator):
    """Autoencoder with the GFE decoder and a mirror-image encoder (the papers' baseline).

    The encoder ``n_features -> 600 -> 300 -> 150 -> n_components`` mirrors the decoder
    ``n_components -> 150 -> 300 -> 600 -> n_features``; both are trained on the
    reconstruction loss of ``D(E(x))``. ``transform`` is the encoder. The interface is
    ``GradientFlowEncoder``'s, so the two swap in one line, and
    ``GradientFlowEncoder.from_autoencoder`` encodes with this model's decoder by gradient flow.

    Parameters
    ----------
    n_components : int, default=20
        Dimension of the latent code.
    hidden_layer_sizes : tuple of int, default=(150, 300, 600)
        Decoder widths from the latent side to the data side; the encoder uses them reversed.
    activation : {'elu', 'relu', 'leaky_relu', 'gelu', 'silu', 'softplus', 'tanh', \
'sigmoid', 'identity'}, default='elu'
    loss : {'auto', 'bce', 'mse'}, default='auto'
        ``'bce'`` needs ``X`` in ``[0, 1]`` (e.g. after ``MinMaxScaler(clip=True)``).
        ``'auto'`` is ``'bce'`` where every observed entry of the first fit's ``X`` lies in
        ``[0, 1]`` and ``'mse'`` otherwise (see ``GradientFlowEncoder``); ``loss_`` records
        the choice.
    optimizer : {'rmsprop', 'adam'}, default='rmsprop'
        RMSprop uses the papers' ``alpha=0.9, eps=1e-6``.
    learning_rate : float, default=5e-4
    batch_size : int, default=32
    max_iter : int, default=200
        Maximum epochs (the papers train 12 epochs of MNIST; small data needs more). An
        autoencoder epoch costs a fraction of a GFE epoch.
    max_samples : int, default=None
        Stop once this call to ``fit`` has trained on this many images.
    tol : float, default=1e-4
    early_stopping : bool, default=False
    validation_fraction : float, default=0.1
    n_iter_no_change : int, default=10
    warm_start : bool, default=False
    encoder : torch.nn.Module, default=None
        An encoder to train instead of the mirror MLP: it maps ``(n, *sample_shape)`` (the
        decoder's output shape) to ``(n, n_components)``. Deep-copied at ``fit``.
    decoder : torch.nn.Module, default=None
        A decoder to train instead of the MLP, with ``GradientFlowEncoder``'s contract. When
        only the decoder is given, the mirror MLP encoder reads the flattened samples.
    device : str, default='auto'
    compute_dtype : {'float32', 'float64'} or None, default='float32'
        The floating-point type of the model and its arithmetic; None follows the training
        data (see ``GradientFlowEncoder``).
    n_threads : int or None, default=1
        torch's intra-op CPU threads while fitting and encoding (see ``GradientFlowEncoder``).
    random_state : int, RandomState instance or None, default=None
    verbose : int, default=0
    distributed : {'auto', True, False}, default='auto'
        Data-parallel training in a ``torch.distributed`` process group, the encoder and
        the decoder alike (see ``GradientFlowEncoder``).

    Attributes
    ----------
    encoder_ : torch.nn.Module
    decoder_ : torch.nn.Module
    optimizer_ : torch.optim.Optimizer
    loss_ : {'bce', 'mse'}
        The loss the model trains and scores with: ``loss``, with ``'auto'`` resolved at
        the first fit (see ``GradientFlowEncoder``).
    device_ : str
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
    n_iter_ : int
    n_samples_seen_ : int
    loss_curve_ : list of float
    validation_scores_ : list of float or None

    See Also
    --------
    GradientFlowEncoder : parameters and attributes in detail.

    Examples
    --------
    >>> import numpy as np
    >>> from gfe_sklearn import AutoEncoderBaseline
    >>> X = np.random.RandomState(0).uniform(size=(40, 8))
    >>> ae = AutoEncoderBaseline(n_components=2, hidden_layer_sizes=(16,), max_iter=2,
    ...                          device="cpu", random_state=0)
    >>> ae.fit_transform(X).shape
    (40, 2)
    """

    _parameter_constraints = {
        **BaseFlowEstimator._parameter_constraints,
        "encoder": [torch.nn.Module, None],
    }

    _transform_uses_loss = False

    _nan_advice = (
        "an autoencoder's encoder network needs every input. "
        "GradientFlowEncoder(allow_nan=True) encodes a sample from its observed "
        "entries alone and reconstructs the missing ones, and "
        "gfe_sklearn.GradientFlowImputer fills them in."
    )

    def __init__(
        self,
        *,
        n_components: int = 20,
        hidden_layer_sizes: int | Sequence[int] = (150, 300, 600),
        activation: str = "elu",
        loss: str = "auto",
        optimizer: str = "rmsprop",
        learning_rate: float = 5e-4,
        batch_size: int = 32,
        max_iter: int = 200,
        max_samples: int | None = None,
        tol: float = 1e-4,
        early_stopping: bool = False,
        validation_fraction: float = 0.1,
        n_iter_no_change: int = 10,
        warm_start: bool = False,
        encoder: torch.nn.Module | None = None,
        decoder: torch.nn.Module | None = None,
        device: Device = "auto",
        compute_dtype: str | None = "float32",
        n_threads: int | None = 1,
        random_state: RandomStateLike = None,
        verbose: int = 0,
        distributed: bool | str = "auto",
    ) -> None:
        super().__init__(
            n_components=n_components,
            hidden_layer_sizes=hidden_layer_sizes,
            activation=activation,
            loss=loss,
            optimizer=optimizer,
            learning_rate=learning_rate,
            batch_size=batch_size,
            max_iter=max_iter,
            max_samples=max_samples,
            tol=tol,
            early_stopping=early_stopping,
            validation_fraction=validation_fraction,
            n_iter_no_change=n_iter_no_change,
            warm_start=warm_start,
            device=device,
            compute_dtype=compute_dtype,
            n_threads=n_threads,
            random_state=random_state,
            verbose=verbose,
            decoder=decoder,
            distributed=distributed,
        )
        self.encoder = encoder

    _module_parameters = {"decoder_": "decoder", "encoder_": "encoder"}

    def _build_modules(self, n_features, architecture, generator, dtype, device):
        def build(module, maker):
            if module is not None:
                return copy.deepcopy(module).to(device=device, dtype=dtype)
            return build_mlp(maker, architecture, n_features, generator, dtype, device)

        # The default MLP encoder reads flat rows, whatever the decoder's output shape.
        self._flat_encoder = self.encoder is None
        # The decoder is drawn first, so that it matches a GFE's with the same random_state.
        decoder = build(self.decoder, make_decoder)
        return {"decoder_": decoder, "encoder_": build(self.encoder, make_encoder)}

    def _check_modules(self, modules, probe):
        sample = torch.zeros_like(probe)
        try:
            with torch.no_grad():
                codes = self._run_encoder(modules["encoder_"], sample)
        except RuntimeError as error:
            raise ValueError(
                f"The encoder cannot encode a sample of shape {tuple(sample.shape)} (the "
                f"decoder's output shape): {error}."
            ) from error
        if tuple(codes.shape) != (1, self.n_components):
            raise ValueError(
                f"The encoder maps a sample of shape {tuple(sample.shape)} to shape "
                f"{tuple(codes.shape)}; it must return (n, n_components={self.n_components})."
            )

    def _run_encoder(self, encoder, target):
        return encoder(target.reshape(len(target), -1) if self._flat_encoder else target)

    def _modules(self):
        return [self.encoder_, self.decoder_]

    def _training_loss(self, target, batch=None):
        # Every row's loss is its own: a rank's share needs nothing from the others.
        loss = LOSSES[self.loss_]
        return loss(self.decoder_(self._run_encoder(self.encoder_, target)), target)

    def _encode(self, target, with_loss):
        # In the row counts that round every row alike, as the flow's engine: a sample's code
        # and loss are the same bit for bit whatever batch it is in.
        encoder, decoder = padded_mlp(self.encoder_), padded_mlp(self.decoder_)
        codes = invariant_rowwise(
            lambda t: self._run_encoder(encoder, t),
            target,
            chunk=self._row_chunk(self.encoder_),
            owner=self.encoder_,
            probe=(probe_rows(target),),
        )
        loss = None
        if with_loss:
            loss_fn = LOSSES[self.loss_]
            loss = invariant_rowwise(
                lambda z, t: loss_fn(decoder(z), t),
                codes,
                target,
                chunk=self._row_chunk(self.decoder_),
                owner=self.decoder_,
                probe=(probe_codes(codes.shape[1], codes), probe_rows(target)),
                key=(loss_fn.name,),
            )
        return codes, loss
