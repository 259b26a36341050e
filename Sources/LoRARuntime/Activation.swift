// The activations and their gradients, elementwise over any shape:
// - GPT-2's `gelu_new` (the tanh approximation), written as `x·σ(2u)` with `u = √(2/π)·(x + 0.044715·x³)`, which
//   equals `0.5·x·(1 + tanh u)` and needs one exp;
// - Llama's gated MLP activation SwiGLU, `silu(gate)·up` with `silu(g) = g·σ(g)`, on the gate and up projections.

/// `y = gelu(x)` elementwise. `y` may be `x`.
public struct GELU: BackendOp {
    public var owner: any Backend { x.backend }
    public let x: Tensor, y: Tensor

    public init(x: Tensor, y: Tensor) throws {
        try x.backend.requireOwned("gelu", x, y)
        try requireFloat32("gelu", ("x", x), ("y", y))
        guard x.count == y.count else {
            throw LoRAError.shapeMismatch("gelu: x \(describe(x.shape)) and y \(describe(y.shape)) differ in size")
        }
        (self.x, self.y) = (x, y)
    }
}

/// `dx = dy·gelu′(x)` elementwise (written, not accumulated). `dx` may be `dy`.
public struct GELUBackward: BackendOp {
    public var owner: any Backend { x.backend }
    public let x: Tensor, dy: Tensor, dx: Tensor

    public init(x: Tensor, dy: Tensor, dx: Tensor) throws {
        try x.backend.requireOwned("geluBackward", x, dy, dx)
        try requireFloat32("geluBackward", ("x", x), ("dy", dy), ("dx", dx))
        guard x.count == dy.count, x.count == dx.count else {
            throw LoRAError.shapeMismatch("geluBackward: x \(describe(x.shape)), dy \(describe(dy.shape)) and "
                + "dx \(describe(dx.shape)) differ in size")
        }
        (self.x, self.dy, self.dx) = (x, dy, dx)
    }
}

/// The constants of `gelu_new`, shared by every backend's Swift code (Kernels/activation.cl repeats them).
public enum GELUConstants {
    /// √(2/π).
    public static let sqrtTwoOverPi: Float = 0.7978845608028654
    /// The coefficient of x³ in u.
    public static let cubic: Float = 0.044715
}

/// `y = silu(gate)·up` elementwise, `silu(g) = g·σ(g)`: Llama's MLP, `act_fn(gate_proj(x)) * up_proj(x)`.
/// gate, up and y are `[N, I]` (any shape of one count). `y` may be `gate` or `up`.
public struct SwiGLU: BackendOp {
    public var owner: any Backend { gate.backend }
    public let gate: Tensor, up: Tensor, y: Tensor

    public init(gate: Tensor, up: Tensor, y: Tensor) throws {
        try gate.backend.requireOwned("swiglu", gate, up, y)
        try requireFloat32("swiglu", ("gate", gate), ("up", up), ("y", y))
        guard gate.count == up.count, gate.count == y.count else {
            throw LoRAError.shapeMismatch("swiglu: gate \(describe(gate.shape)), up \(describe(up.shape)) and "
                + "y \(describe(y.shape)) differ in size")
        }
        (self.gate, self.up, self.y) = (gate, up, y)
    }
}

/// Gradient of `SwiGLU` from dy, written (not accumulated):
/// `dGate = dy·up·σ(g)·(1 + g·(1 − σ(g)))` (PyTorch's silu backward), `dUp = dy·silu(g)`.
///
/// Every element is read before it is written, so each output may be any one of the inputs: the usual choice is
/// `dGate = gate` and `dUp = up` (both dead after the backward), or either may be `dy`. dGate and dUp must differ.
public struct SwiGLUBackward: BackendOp {
    public var owner: any Backend { gate.backend }
    public let gate: Tensor, up: Tensor, dy: Tensor, dGate: Tensor, dUp: Tensor

    public init(gate: Tensor, up: Tensor, dy: Tensor, dGate: Tensor, dUp: Tensor) throws {
        try gate.backend.requireOwned("swigluBackward", gate, up, dy, dGate, dUp)
        try requireFloat32("swigluBackward", ("gate", gate), ("up", up), ("dy", dy), ("dGate", dGate), ("dUp", dUp))
        guard [up, dy, dGate, dUp].allSatisfy({ $0.count == gate.count }) else {
            throw LoRAError.shapeMismatch("swigluBackward: gate \(describe(gate.shape)), up \(describe(up.shape)), "
                + "dy \(describe(dy.shape)), dGate \(describe(dGate.shape)) and dUp \(describe(dUp.shape)) differ in size")
        }
        try requireDisjoint("swigluBackward", outputs: [("dGate", dGate), ("dUp", dUp)], inputs: [])
        (self.gate, self.up, self.dy, self.dGate, self.dUp) = (gate, up, dy, dGate, dUp)
    }
}
