// loss.svg: the train loss per step (a line) and the eval loss (points), on labelled axes, as a self-contained
// SVG any browser opens.
import Foundation

public enum LossPlot {
    /// The SVG text for `train` (step, loss) and `eval` (step, loss) points.
    public static func svg(train: [(Int, Float)], eval: [(Int, Float)], title: String) -> String {
        let (width, height, left, right, top, bottom) = (720.0, 420.0, 64.0, 20.0, 36.0, 44.0)
        let all = (train + eval).filter { $0.1.isFinite }
        let maxStep = Double(max(1, all.map(\.0).max() ?? 1))
        var low = Double(all.map(\.1).min() ?? 0), high = Double(all.map(\.1).max() ?? 1)
        if high - low < 1e-6 { (low, high) = (low - 0.5, high + 0.5) }
        (low, high) = (low - 0.05 * (high - low), high + 0.05 * (high - low))  // keep points off the frame
        func x(_ step: Int) -> Double { left + Double(step) / maxStep * (width - left - right) }
        func y(_ loss: Float) -> Double { top + (high - Double(loss)) / (high - low) * (height - top - bottom) }
        func f(_ v: Double) -> String { String(format: "%.1f", v) }
        var svg = """
            <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(width))" height="\(Int(height))" font-family="sans-serif" font-size="12">
            <rect width="100%" height="100%" fill="white"/>
            <text x="\(f(width / 2))" y="22" text-anchor="middle" font-size="14">\(escape(title))</text>
            <line x1="\(f(left))" y1="\(f(height - bottom))" x2="\(f(width - right))" y2="\(f(height - bottom))" stroke="black"/>
            <line x1="\(f(left))" y1="\(f(top))" x2="\(f(left))" y2="\(f(height - bottom))" stroke="black"/>

            """
        for i in 0...4 {
            let value = low + (high - low) * Double(i) / 4
            let py = y(Float(value))
            svg += "<line x1=\"\(f(left - 4))\" y1=\"\(f(py))\" x2=\"\(f(width - right))\" y2=\"\(f(py))\" stroke=\"#ddd\"/>"
            svg += "<text x=\"\(f(left - 8))\" y=\"\(f(py + 4))\" text-anchor=\"end\">\(String(format: "%.3g", value))</text>\n"
            let step = Int((maxStep * Double(i) / 4).rounded())
            svg += "<text x=\"\(f(x(step)))\" y=\"\(f(height - bottom + 18))\" text-anchor=\"middle\">\(step)</text>\n"
        }
        svg += "<text x=\"\(f(width / 2))\" y=\"\(f(height - 6))\" text-anchor=\"middle\">step</text>\n"
        svg += "<text x=\"16\" y=\"\(f(height / 2))\" text-anchor=\"middle\" transform=\"rotate(-90 16 \(f(height / 2)))\">loss</text>\n"
        let points = train.filter { $0.1.isFinite }.map { "\(f(x($0.0))),\(f(y($0.1)))" }.joined(separator: " ")
        svg += "<polyline fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"1.5\" points=\"\(points)\"/>\n"
        for (step, loss) in eval where loss.isFinite {
            svg += "<circle cx=\"\(f(x(step)))\" cy=\"\(f(y(loss)))\" r=\"3.5\" fill=\"#d62728\"/>\n"
        }
        svg += "<text x=\"\(f(width - right - 150))\" y=\"\(f(top + 14))\" fill=\"#1f77b4\">— train loss</text>\n"
        if !eval.isEmpty { svg += "<text x=\"\(f(width - right - 150))\" y=\"\(f(top + 30))\" fill=\"#d62728\">● eval loss</text>\n" }
        return svg + "</svg>\n"
    }

    static func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
    }
}
