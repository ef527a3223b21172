extension Duration {
    /// Whole nanoseconds (durations here are far below the 292-year limit).
    var nanoseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1_000_000_000 + attoseconds / 1_000_000_000
    }

    /// Whole milliseconds.
    var milliseconds: Int64 { nanoseconds / 1_000_000 }
}
