import Testing
@testable import LoRASelftest
