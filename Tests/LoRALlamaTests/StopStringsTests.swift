// Stop strings at the text level (StopStrings, IncrementalText): matched as vLLM matches them, text held back only
// while it could still be the start of a stop string or an unfinished character, and nothing shown twice.
import LoRAModels
import Testing

@Suite("Stop strings")
struct StopStringsTests {
    /// Feeds successive decodings; returns each call's shown text.
    func feed(_ stops: [String], _ decodings: [String], final: Bool = true) -> (shown: [String], text: IncrementalText) {
        var text = IncrementalText(stops: StopStrings(stops))
        var shown = decodings.enumerated().map { i, decoded in text.update(decoded: decoded, final: final && i == decodings.count - 1) }
        if !final { shown.append(text.update(decoded: decodings.last!, final: true)) }
        return (shown, text)
    }

    @Test("a partial stop string is held back, released when it turns out not to be one, and cut when it is")
    func holdBackAndCut() {
        let (shown, text) = feed(["</s>", "END"], ["ab", "ab<", "ab</", "ab</x", "ab</xEN", "ab</xEND", "ab</xEND more"])
        #expect(shown == ["ab", "", "", "</x", "", "", ""])
        #expect(text.stopped && text.text == "ab</x")
    }

    @Test("without a match the held-back text comes out at the end")
    func finalFlush() {
        let (shown, text) = feed(["END"], ["a", "aE", "aEN"], final: false)
        #expect(shown == ["a", "", "", "EN"])
        #expect(!text.stopped && text.text == "aEN")
    }

    @Test("a token ending inside a UTF-8 character (U+FFFD at the end) waits for the character")
    func unfinishedCharacter() {
        let (shown, _) = feed([], ["a\u{FFFD}", "aé", "aé\u{FFFD}"])
        #expect(shown == ["a", "é", "\u{FFFD}"])  // the last decoding is final: a broken character stays broken
    }

    @Test("a match spanning tokens, one inside a single token, and stop strings tried in the order given (as vLLM)")
    func matching() {
        #expect(feed(["lo w"], ["hel", "hello", "hello wor"]).text.text == "hel")
        #expect(feed(["xyz"], ["abxyzcd"]).shown == ["ab"] && feed(["xyz"], ["abxyzcd"]).text.text == "ab")
        // Both complete in the same new text: the first listed wins, even though the other starts earlier.
        #expect(feed(["bc", "ab"], ["abc"]).text.text == "a")
        // Text before the new text was searched already: a stop string entirely inside it is not matched again.
        let stops = StopStrings(["ab"])
        #expect(stops.match(in: Array("xxab".unicodeScalars), settled: 4) == nil)
        #expect(stops.match(in: Array("xxab".unicodeScalars), settled: 3) == 2)
        #expect(stops.partialSuffix(of: Array("xxa".unicodeScalars)) == 1 && stops.partialSuffix(of: Array("xab".unicodeScalars)) == 0)
    }

    @Test("scalars, not characters: a combining mark after shown text does not re-show it")
    func combiningMarks() {
        let (shown, text) = feed(["STOP"], ["e", "e\u{301}", "e\u{301}x"])
        #expect(shown == ["e", "\u{301}", "x"] && text.text == "e\u{301}x")
    }
}
