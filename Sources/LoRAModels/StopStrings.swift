// Stop strings (OpenAI's `stop`): texts that end a request when they appear in its decoded output, matched as vLLM
// matches them (vllm/v1/engine/detokenizer.py, `check_stop_strings`): after each token, each stop string in the
// order given is searched for in the part of the text that could hold a match ending in the new text; on a match the
// output is cut before the stop string. While streaming, text that could still be the start of a stop string is
// held back until the next token settles it (vLLM holds back the longest stop string's length less one; holding back
// only a real partial match shows text sooner and gives the same final text).
//
// Text is handled as Unicode scalars, not Characters: text appended later can merge with the last grapheme cluster,
// scalars never move. A trailing U+FFFD is a token that ended inside a UTF-8 character; it is held back until the
// character completes (or the request ends).

/// A request's stop strings.
public struct StopStrings: Sendable, Equatable {
    /// Each stop string as scalars, in the order given.
    public let strings: [[Unicode.Scalar]]

    /// `strings` must not be empty texts (an empty stop string would match everywhere).
    public init(_ strings: [String]) {
        precondition(strings.allSatisfy { !$0.isEmpty }, "stop strings must not be empty")
        self.strings = strings.map { Array($0.unicodeScalars) }
    }

    public var isEmpty: Bool { strings.isEmpty }

    /// Where the first stop string (in the order given) that matches in `text` with its end past scalar `settled`
    /// begins, as a scalar offset; nil when none does. Text up to `settled` was searched before.
    public func match(in text: [Unicode.Scalar], settled: Int) -> Int? {
        for stop in strings where stop.count <= text.count {
            // A match ending past `settled` starts at or after settled − count + 1 (vLLM's `1 - new_char_count - len`).
            var start = max(0, settled - stop.count + 1)
            while start + stop.count <= text.count {
                if text[start..<start + stop.count].elementsEqual(stop) { return start }
                start += 1
            }
        }
        return nil
    }

    /// How many scalars at the end of `text` are a proper prefix of some stop string: what streaming holds back.
    public func partialSuffix(of text: [Unicode.Scalar]) -> Int {
        var longest = 0
        for stop in strings {
            for length in stride(from: min(stop.count - 1, text.count), to: longest, by: -1)
            where text[(text.count - length)...].elementsEqual(stop[..<length]) {
                longest = length
                break
            }
        }
        return longest
    }
}

/// A request's output text as its tokens arrive: the whole output decoded again after each token, stop strings
/// matched, and the part that is safe to show handed out once.
public struct IncrementalText: Sendable {
    public let stops: StopStrings
    /// The output so far (cut before a stop string once one matched).
    public private(set) var scalars: [Unicode.Scalar] = []
    /// Scalars already handed out by `update`.
    public private(set) var emitted = 0
    /// A stop string matched: the output ends here.
    public private(set) var stopped = false

    public init(stops: StopStrings) { self.stops = stops }

    public var text: String { String(String.UnicodeScalarView(scalars)) }

    /// Takes the whole output decoded so far (`final`: the request ends with this text); returns the text that became
    /// safe to show since the last call. Once a stop string matched (`stopped`), later calls return "".
    public mutating func update(decoded: String, final: Bool = false) -> String {
        guard !stopped else { return "" }
        var new = Array(decoded.unicodeScalars)
        if !final { while new.last == "\u{FFFD}" { new.removeLast() } }
        // Text before the first scalar that changed was searched before (it only changes when a character completes).
        var settled = 0
        while settled < min(scalars.count, new.count) && scalars[settled] == new[settled] { settled += 1 }
        var safe: Int
        if let start = stops.match(in: new, settled: settled) {
            new.removeSubrange(start...)
            (stopped, safe) = (true, start)
        } else {
            safe = final ? new.count : new.count - stops.partialSuffix(of: new)
        }
        scalars = new
        // What was shown cannot be taken back; a decoding that rewrote shown text continues after it.
        safe = max(safe, emitted)
        guard safe <= scalars.count else { return "" }
        let delta = String(String.UnicodeScalarView(scalars[emitted..<safe]))
        emitted = safe
        return delta
    }
}
